"""Palisade's ML2 mechanism driver for neutron-server (DESIGN §11.11)."""
