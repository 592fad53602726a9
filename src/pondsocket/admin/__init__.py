"""The admin page a node serves when ``PondOptions.admin_path`` is set (docs/admin.md):
a live view of the node, its cluster, channels, members and connections, and actions to
evict a user and close a connection."""

from pondsocket.admin.site import AdminSite

__all__ = ["AdminSite"]
