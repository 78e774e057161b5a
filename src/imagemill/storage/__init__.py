"""Storage: content-addressed blobs (obstore) and the image handling around them."""
