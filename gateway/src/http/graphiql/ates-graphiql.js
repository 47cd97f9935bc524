// GraphiQL for aTES: queries and mutations over HTTP, subscriptions over the gateway's
// WebSocket (graphql-transport-ws). The token goes in the Headers tab as
// {"Authorization": "Bearer <token>"}; it is sent with each HTTP request and in the socket's
// connection_init. Everything is served by the gateway itself: nothing comes from the internet.
(function () {
  "use strict";

  var socketUrl = location.origin.replace(/^http/, "ws") + "/graphql/ws";
  var http = GraphiQL.createFetcher({ url: location.origin + "/graphql" });

  // One socket per token: a new token in the Headers tab opens a new socket.
  var socket = null;
  var socketToken = null;
  function socketFor(authorization) {
    if (socket === null || socketToken !== authorization) {
      if (socket !== null) {
        socket.dispose();
      }
      socketToken = authorization;
      socket = graphqlWs.createClient({
        url: socketUrl,
        connectionParams: authorization ? { Authorization: authorization } : {},
        lazy: true,
      });
    }
    return socket;
  }

  function isSubscription(options) {
    var document = options && options.documentAST;
    if (!document) {
      return false;
    }
    var name = options.operationName;
    return document.definitions.some(function (definition) {
      return definition.kind === "OperationDefinition" &&
        definition.operation === "subscription" &&
        (!name || (definition.name && definition.name.value === name));
    });
  }

  function fetcher(params, options) {
    if (!isSubscription(options)) {
      return http(params, options);
    }
    var headers = (options && options.headers) || {};
    var client = socketFor(headers.Authorization || headers.authorization || null);
    return {
      subscribe: function (observer) {
        var dispose = client.subscribe(params, {
          next: function (value) { observer.next(value); },
          error: function (error) { observer.error(error); },
          complete: function () { observer.complete(); },
        });
        return { unsubscribe: dispose };
      },
    };
  }

  var example = [
    "# Put your token in the Headers tab below: {\"Authorization\": \"Bearer <token>\"}",
    "# (`cargo run -p gateway -- token --role admin --name Alice` prints one).",
    "query Me {",
    "  me { id name role }",
    "}",
    "",
  ].join("\n");

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: example,
      shouldPersistHeaders: true,
      defaultHeaders: "{\n  \"Authorization\": \"Bearer <token>\"\n}",
    })
  );
})();
