"""The output path: families, immutable snapshots, the store of rendered pieces, exposition."""
