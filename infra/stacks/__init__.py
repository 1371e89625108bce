"""Thin stacks: they compose constructs and do the grants that cross them."""
