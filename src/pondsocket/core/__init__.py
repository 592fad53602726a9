"""The core model: endpoints, lobbies, channels, sessions, contexts. No sockets, no broker."""
