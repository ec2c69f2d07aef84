"""Quality beside energy: the task metrics that score a benchmark's kept outputs after its metered phases."""
