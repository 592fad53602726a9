"""The core model: server, endpoints, lobbies, channels, contexts. No sockets here."""
