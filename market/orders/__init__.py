"""Orders: lines from listings (later gift packages), fulfilments per cooperative, shipments."""
