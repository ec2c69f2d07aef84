"""What AI Energy Score says: the protocol of each task, with where every value comes from. Standard library only."""
