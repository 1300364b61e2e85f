"""Course bundles: the document, its builder, lookup indexes, redirects, codec and store."""
