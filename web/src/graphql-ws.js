// The graphql-ws client, re-exported for the browser (taxi/web/app/*.js import it).
export { createClient, CloseCode } from "graphql-ws";
