// Apollo Client 4: queries and mutations over HTTP, subscriptions over graphql-ws.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { SetContextLink } from "@apollo/client/link/context";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import WebSocket from "ws"; // Node.js 20 only: browsers and Node.js 22 have a WebSocket

import { accessToken, logIn } from "./tokens.mjs";

globalThis.WebSocket ??= WebSocket; // GraphQLWsLink reads the global
const HTTP_URL = process.env.TAXI_URL ?? "http://127.0.0.1:8000/graphql";

const wsClient = createClient({
  url: HTTP_URL.replace(/^http/, "ws"),
  // Called on every (re)connection: after the server closed the socket with 4403 because
  // its token expired, graphql-ws reconnects with a fresh one.
  connectionParams: async () => ({ Authorization: `Bearer ${await accessToken()}` }),
  on: { connected: () => console.log("connected") },
});
const http = new SetContextLink(async () => ({
  headers: { Authorization: `Bearer ${await accessToken()}` },
})).concat(new HttpLink({ uri: HTTP_URL }));
const isSubscription = ({ query }) => {
  const definition = getMainDefinition(query);
  return definition.kind === "OperationDefinition" && definition.operation === "subscription";
};
const client = new ApolloClient({
  link: ApolloLink.split(isSubscription, new GraphQLWsLink(wsClient), http),
  cache: new InMemoryCache(),
});

await logIn(process.env.TAXI_USERNAME, process.env.TAXI_PASSWORD);
const { data } = await client.query({ query: gql`query Me { me { username group } }` });
console.log(`signed in as ${data.me.username}`);

const watch = client.subscribe({
  query: gql`subscription Watch($id: ID!) { tripUpdated(id: $id) { id status } }`,
  variables: { id: process.env.TAXI_TRIP },
});
const subscription = watch.subscribe({
  next: ({ data }) => {
    console.log(`status ${data.tripUpdated.status}`); // the current state first, then each change
    if (["COMPLETED", "CANCELED"].includes(data.tripUpdated.status)) {
      subscription.unsubscribe();
      client.stop();
      wsClient.dispose();
    }
  },
  error: (err) => {
    console.error(err);
    process.exitCode = 1;
    wsClient.dispose();
  },
});
