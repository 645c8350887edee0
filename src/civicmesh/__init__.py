"""civicmesh: an open city data platform built on the ETSI NGSI-LD interface."""

__version__ = "0.1.0"
