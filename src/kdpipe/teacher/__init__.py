"""Where a teacher comes from, and the cache of its outputs that every distill run replays."""
