"""Dataset curation: scorers, the LVD table, filters, funnel statistics and subsets."""
