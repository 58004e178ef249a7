"""A simulated bus fleet: each bus on a trip under way reports GPS fixes over RabbitMQ."""
