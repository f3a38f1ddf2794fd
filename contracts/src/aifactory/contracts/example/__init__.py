"""A small example domain used by the bus kit's own tests and docs."""
