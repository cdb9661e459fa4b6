"""The shared dataset layer: OGBench-layout datasets, goal sampling, loaders, generation."""
