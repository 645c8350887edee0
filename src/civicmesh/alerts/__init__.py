"""Early warnings: rules on entity attributes that raise Smart Data Models Alert entities within seconds."""
