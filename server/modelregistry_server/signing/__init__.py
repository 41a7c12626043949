"""OpenSSF model signatures, checked on the server side."""
