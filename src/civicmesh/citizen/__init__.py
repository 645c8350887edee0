"""The citizen desk: Open311 GeoReport v2 intake, 12345-style dispatch, working-day time limits,
supervision, duplicates, return visits and department scores."""
