"""Backups and restores of a whole registry: a database snapshot plus the
blobs it references, copied by digest (see `backup.py` for the layout)."""
