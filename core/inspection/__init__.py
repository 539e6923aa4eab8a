"""Submit-time inspection of models and datasets: URIs parsed, files reached beneath their
roots and checked, records read. No torch here, so the API can run all of it."""
