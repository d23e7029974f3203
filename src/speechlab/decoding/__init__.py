"""Search: CTC and attention decoders, CTC prefix scores, n-gram LMs."""
