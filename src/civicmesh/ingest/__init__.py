"""The IoT agent: provisioned devices send UltraLight 2.0 or JSON measurements over HTTP or MQTT."""
