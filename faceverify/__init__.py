"""faceverify: self-hosted face verification and identification (the command-line entry)."""
