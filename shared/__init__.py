"""What the control plane and the edge must agree on."""
