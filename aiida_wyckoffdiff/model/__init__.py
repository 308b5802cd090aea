"""The WyckoffDiff-Adaptor model: a D3PM over protostructures with a Wyckoff-position GNN and condition adapters.

Import the submodules directly; this package module stays light so that entry points load fast.
"""
