"""The Flower ClientApp, honest local training, and client-side attacks."""
