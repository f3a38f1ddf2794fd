"""Inventory contracts: sites, racks, nodes, admin state and tenant dedication."""
