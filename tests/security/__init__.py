"""Security suite: secrets never shown or written, TLS verified by default, loopback binds."""
