"""The stages of an executed run: prepare (rehearsal, restore), train, finish, batch size."""
