"""The chaos run: seeded faults under load, checked against an independent model (`./dev chaos`)."""
