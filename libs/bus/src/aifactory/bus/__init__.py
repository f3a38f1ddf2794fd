"""aifactory bus kit: see the README section "The bus kit"."""
