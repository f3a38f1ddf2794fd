"""Contracts of the keys domain: per-tenant key custody, envelope encryption, audit."""
