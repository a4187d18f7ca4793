"""The attach plan: from kernel facts to what to attach and how, decided once."""
