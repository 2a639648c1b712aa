// GraphiQL served by taxi itself (no CDN). Queries and mutations go over HTTP; subscriptions
// over graphql-ws with the Headers tab as the connection_init payload. A socket the server
// refuses (4403: missing, bad or expired token) ends the subscription at once with a readable
// error, instead of graphql-ws's default of retrying for half a minute.
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import "graphiql/graphiql.css";
import { parse } from "graphql";
import { createClient } from "graphql-ws";
import { createRoot } from "react-dom/client";

const CLOSE_MESSAGES = {
  4403: "The server refused the subscription socket (4403 Forbidden): the token is missing, invalid or expired. Log in again and put Authorization: Bearer <access> (from logIn) in the Headers tab.",
  4408: "No connection_init in time (4408).",
  4429: "Too many sockets or a repeated connection_init (4429).",
  4400: "The server could not read a message (4400).",
  1013: "The server is temporarily unavailable (1013); try again.",
};

function isSubscription(params) {
  try {
    const ops = parse(params.query).definitions.filter((d) => d.kind === "OperationDefinition");
    const op = params.operationName
      ? ops.find((d) => d.name && d.name.value === params.operationName)
      : ops[0];
    return Boolean(op && op.operation === "subscription");
  } catch {
    return false; // let the server report the syntax error over HTTP
  }
}

function closeError(event) {
  const code = event && typeof event.code === "number" ? event.code : undefined;
  const message =
    CLOSE_MESSAGES[code] ||
    (code ? `The socket closed (${code}${event.reason ? " " + event.reason : ""}).` : String(event && event.message || event));
  return { errors: [{ message, extensions: { code: code === 4403 ? "UNAUTHENTICATED" : "SOCKET_CLOSED", closeCode: code } }] };
}

function subscriptionFetcher(wsUrl, params, headers) {
  return {
    subscribe(observer) {
      const client = createClient({
        url: wsUrl,
        connectionParams: headers || {},
        retryAttempts: 0,
        lazy: true,
      });
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          observer.complete();
          client.dispose();
        }
      };
      const stop = client.subscribe(params, {
        next: (value) => observer.next(value),
        error: (err) => {
          if (done) return;
          if (Array.isArray(err)) observer.next({ errors: err });
          else observer.next(closeError(err));
          finish();
        },
        complete: finish,
      });
      return {
        unsubscribe() {
          done = true;
          stop();
          client.dispose();
        },
      };
    },
  };
}

const url = new URL(window.location.pathname, window.location.href).href;
const wsUrl = url.replace(/^http/, "ws");
const http = createGraphiQLFetcher({ url });
const fetcher = (params, opts) =>
  isSubscription(params) ? subscriptionFetcher(wsUrl, params, opts && opts.headers) : http(params, opts);

createRoot(document.getElementById("graphiql")).render(
  <GraphiQL fetcher={fetcher} shouldPersistHeaders={true} defaultEditorToolsVisibility={true} />,
);
