// Starts GraphiQL on the page. A file of its own, so the page's Content-Security-Policy
// needs no inline script. Headers typed in the editor (a master token) are not persisted.
(function () {
  var fetcher = GraphiQL.createFetcher({ url: new URL('/graphql', window.location.href).href });
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, { fetcher: fetcher, shouldPersistHeaders: false }));
})();
