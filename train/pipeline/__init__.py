"""Reading, inspecting and rewriting OD API pipeline configs (protobuf text format)."""
