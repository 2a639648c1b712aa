"""Domain: the tables, read models, events, business rules (services), dispatch, the
position store and who may see what. Knows no GraphQL and no transport."""
