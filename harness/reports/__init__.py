"""Tables, the HTML report and comparisons built from run directories."""
