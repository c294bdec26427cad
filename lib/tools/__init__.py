"""Tools built on lib.live and lib.training: evaluate, the peers and their comparison, the live
benchmark, labels from person boxes. Nothing below imports from here."""
