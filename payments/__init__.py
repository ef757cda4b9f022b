"""Payment providers behind one interface: offline bank transfer (default) and Stripe.

Never imports market."""
