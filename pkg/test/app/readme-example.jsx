import { QueryClient, QueryClientProvider, useQuery } from '@tanstack/react-query';
import { HeraldProvider, useInvalidateOnEvent } from '@herald/realtime/react';
const queryClient = new QueryClient();
function GiftList({ id }) {
  const { data } = useQuery({ queryKey: ['gifts', id], queryFn: () => fetch(`/api/gifts/${id}`).then((r) => r.json()) });
  useInvalidateOnEvent(queryClient, `gift-list:${id}`, ['gifts', id]); // refetch on every change, and after a resync
  return <ul>{data?.map((gift) => <li key={gift.id}>{gift.name}</li>)}</ul>;
}
export const App = ({ url }) => ( // e.g. 'wss://example.com/ws'
  <QueryClientProvider client={queryClient}><HeraldProvider options={{ url, token: 'dev-user' }}><GiftList id="family-123" /></HeraldProvider></QueryClientProvider>);
