// The conversation's image tree with thumbnails; clicking a node checks it out.
// props: nodes [{number, parent, kind, label, thumb, draft, finalOf}], head
export default function HistoryTree() {
  const nodes = props.nodes || [];
  const children = {};
  nodes.forEach((n) => {
    const key = n.parent == null ? "root" : String(n.parent);
    (children[key] = children[key] || []).push(n);
  });

  const renderNode = (n, depth) => (
    <li key={n.number}>
      <button
        type="button"
        data-node={n.number}
        onClick={() => callAction({ name: "checkout", payload: { number: n.number } })}
        className={
          "flex w-full items-center gap-2 rounded-md border p-1 text-left hover:bg-accent " +
          (n.number === props.head ? "border-primary ring-2 ring-primary" : "border-transparent")
        }
        title={`Continue from #${n.number}`}
      >
        <img src={n.thumb} alt={`#${n.number}`} className="h-12 w-12 rounded object-cover" />
        <span className="font-mono text-sm">#{n.number}</span>
        <span className="truncate text-sm text-muted-foreground">{n.kind}: {n.label}</span>
        {n.draft && <span className="rounded bg-amber-500/20 px-1 text-xs text-amber-600">draft</span>}
        {n.finalOf && <span className="rounded bg-emerald-500/20 px-1 text-xs text-emerald-600">final of #{n.finalOf}</span>}
        {n.number === props.head && <span className="ml-auto text-xs text-primary">current</span>}
      </button>
      {(children[String(n.number)] || []).length > 0 && (
        <ul className="ml-6 border-l pl-2">
          {children[String(n.number)].map((c) => renderNode(c, depth + 1))}
        </ul>
      )}
    </li>
  );

  return (
    <div className="w-full max-w-xl" data-testid="history-tree">
      <ul className="space-y-1">{(children.root || []).map((n) => renderNode(n, 0))}</ul>
    </div>
  );
}
