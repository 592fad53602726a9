"""KafkaPubSub against a real Tansu broker: the shared PubSub conformance suite."""

from tests.pubsub_conformance import *  # noqa: F403
