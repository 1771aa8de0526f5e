"""Monthly close, statements, disputes and reports (issue 6); see docs/settlement.md."""
