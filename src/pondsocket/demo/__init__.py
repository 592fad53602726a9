"""A small chat application and its browser page, served by ``pondsocket demo``."""

from pondsocket.demo.app import DEMO_PAGE, create_demo

__all__ = ["DEMO_PAGE", "create_demo"]
