"""A small shop API: items, users and orders."""
