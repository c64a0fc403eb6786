"""Shipped recipes (YAML), installed as the package ``slmkit.recipes`` so ``slmkit run NAME`` finds them."""
