"""OneRoster 1.2 (Timeback extensions) client: models, filters, a sans-I/O protocol and two shells."""
