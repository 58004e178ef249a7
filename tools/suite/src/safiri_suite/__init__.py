"""Safiri's process supervisor: the suite (services, simulator, trace store, RabbitMQ nodes,
HAProxy) as processes on loopback ports, as `safiri up`, the tests, chaos and load runs use it."""
