"""QR rendering: payload → matrix → geometry → SVG / PNG / WebP, and the scannability guarantee."""
