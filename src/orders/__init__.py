"""Demo Lambda tool `orders` (gateway target `orders`): order lookups scoped to the human who asked."""
