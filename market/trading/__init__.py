"""Trading: bids on listings, sealed-bid auctions and their clearing."""
