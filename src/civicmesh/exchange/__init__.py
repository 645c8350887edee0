"""The data exchange: identities, catalog, agreements, ODRL policies, the access gate, metering."""
